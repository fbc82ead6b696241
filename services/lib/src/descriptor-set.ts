import { createRequire } from "node:module";

/**
 * Where the descriptor set of meshcart's contracts is: the one `npm run
 * generate` builds from proto/ into @meshcart/contracts, which reflection
 * serves and request decoding reads field names from. The package's
 * `exports` say where the file lives; resolved on first use, not on import.
 */
export function descriptorSetPath(): string {
  return createRequire(import.meta.url).resolve("@meshcart/contracts/meshcart.binpb");
}
