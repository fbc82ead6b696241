import type { NewProduct } from "./inventory.js";

/**
 * The demo catalogue that `INVENTORY_SEED_CATALOGUE=true` adds. Stock levels
 * are sized for a load generator: one scarce product (MESH-STICKER-GOLD)
 * makes out-of-stock rejections easy to show.
 */
export const demoCatalogue: NewProduct[] = [
  {
    sku: "MESH-TSHIRT",
    name: "Service Mesh T-Shirt",
    description: "Soft cotton, sidecar not included.",
    currencyCode: "USD",
    unitPriceMinor: 2500,
    initialStock: 1000,
  },
  {
    sku: "MESH-HOODIE",
    name: "Zero-Trust Hoodie",
    description: "Keeps you warm and mutually authenticated.",
    currencyCode: "USD",
    unitPriceMinor: 5900,
    initialStock: 500,
  },
  {
    sku: "MESH-MUG",
    name: "Retry Budget Mug",
    description: "Holds 350 ml; refills are idempotent.",
    currencyCode: "USD",
    unitPriceMinor: 1400,
    initialStock: 800,
  },
  {
    sku: "MESH-CAP",
    name: "Circuit Breaker Cap",
    description: "Trips before your head overheats.",
    currencyCode: "USD",
    unitPriceMinor: 1900,
    initialStock: 600,
  },
  {
    sku: "MESH-SOCKS",
    name: "Canary Socks",
    description: "Ten percent yellow, ninety percent stable.",
    currencyCode: "USD",
    unitPriceMinor: 900,
    initialStock: 1200,
  },
  {
    sku: "MESH-NOTEBOOK",
    name: "Saga Notebook",
    description: "Every page a compensating transaction.",
    currencyCode: "USD",
    unitPriceMinor: 1200,
    initialStock: 700,
  },
  {
    sku: "MESH-BOTTLE",
    name: "Deadline Bottle",
    description: "Keeps drinks cold for 2s, per attempt.",
    currencyCode: "USD",
    unitPriceMinor: 2200,
    initialStock: 400,
  },
  {
    sku: "MESH-STICKER-GOLD",
    name: "Golden mTLS Sticker",
    description: "Limited edition: only ten were ever issued.",
    currencyCode: "USD",
    unitPriceMinor: 500,
    initialStock: 10,
  },
];
