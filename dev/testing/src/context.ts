/** What global-setup.ts hands to every test worker through vitest's provide/inject. */
declare module "vitest" {
  export interface ProvidedContext {
    /** Admin URL (database "postgres") of the test run's embedded Postgres. */
    pgUrl: string;
  }
}

export {};
