import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { forEachLine, tail } from "./lines.js";
import { binaryMajorVersion, type OsUser } from "./postgres-binaries.js";

/**
 * Makes `dataDir` exist and belong to the account Postgres will run as, and
 * tells whether it already holds a cluster.
 * As root that account is another user, so every directory above the data
 * directory must let it through: directories created here are opened up
 * (0755), existing ones are only checked, never changed.
 */
export async function prepareDataDir(dataDir: string, runAs: OsUser | undefined): Promise<{ initialised: boolean }> {
  const parent = path.dirname(dataDir);
  const firstCreated = await fs.mkdir(parent, { recursive: true });
  if (runAs) {
    if (firstCreated !== undefined) await openUp(firstCreated, parent);
    await assertReachable(parent, runAs);
  }
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const initialised = await isInitialised(dataDir);
  await assertOwnership(dataDir, runAs);
  return { initialised };
}

async function openUp(top: string, bottom: string): Promise<void> {
  for (let dir = bottom; ; dir = path.dirname(dir)) {
    await fs.chmod(dir, 0o755);
    if (dir === top || dir === path.dirname(dir)) return;
  }
}

async function assertReachable(dir: string, user: OsUser): Promise<void> {
  for (let current = dir; ; current = path.dirname(current)) {
    const stat = await fs.stat(current);
    const searchBit = stat.uid === user.uid ? 0o100 : stat.gid === user.gid ? 0o010 : 0o001;
    if ((stat.mode & searchBit) === 0) {
      throw new Error(
        `as root, Postgres runs as the "postgres" OS user (uid ${user.uid}), which cannot enter ${current} ` +
          `(mode ${(stat.mode & 0o777).toString(8)}, owner uid ${stat.uid}). ` +
          "Put the data directory where that user can reach it, or run as a normal user.",
      );
    }
    if (current === path.dirname(current)) return;
  }
}

async function assertOwnership(dataDir: string, runAs: OsUser | undefined): Promise<void> {
  const owner = runAs?.uid ?? process.getuid?.();
  if (owner === undefined) return;
  const stat = await fs.stat(dataDir);
  if (stat.uid === owner) return;
  if (runAs && (await fs.readdir(dataDir)).length === 0) {
    await fs.chown(dataDir, runAs.uid, runAs.gid);
    return;
  }
  throw new Error(
    `${dataDir} belongs to uid ${stat.uid}, but Postgres would run as uid ${owner}; ` + "delete it (its data is lost) or start as the user that owns it.",
  );
}

/** True for a data directory initdb has filled, false for an empty one. */
async function isInitialised(dataDir: string): Promise<boolean> {
  if (await exists(path.join(dataDir, "PG_VERSION"))) return true;
  if ((await fs.readdir(dataDir)).length === 0) return false;
  throw new Error(`${dataDir} is neither empty nor a Postgres data directory; choose another directory or empty it.`);
}

/** Fails clearly instead of letting Postgres refuse a cluster of another major version. */
export async function assertSameMajorVersion(postgres: string, dataDir: string): Promise<void> {
  const [cluster, binaries] = await Promise.all([
    fs.readFile(path.join(dataDir, "PG_VERSION"), "utf8").then((text) => text.trim()),
    binaryMajorVersion(postgres),
  ]);
  if (cluster === binaries) return;
  throw new Error(
    `${dataDir} was created by Postgres ${cluster}, but the embedded binaries are Postgres ${binaries}. ` +
      "Delete the directory to start over (its data is lost).",
  );
}

export interface InitdbOptions {
  initdb: string;
  dataDir: string;
  runAs: OsUser | undefined;
  user: string;
  password: string;
  /** Whether to fsync the new cluster; a throwaway test cluster needs not. */
  durable: boolean;
  log: (line: string) => void;
}

export async function initialiseDataDir(options: InitdbOptions): Promise<void> {
  const passwordFile = path.join(os.tmpdir(), `meshcart-pg-password-${randomUUID()}`);
  await fs.writeFile(passwordFile, `${options.password}\n`, { mode: 0o600, flag: "wx" });
  try {
    if (options.runAs) await fs.chown(passwordFile, options.runAs.uid, options.runAs.gid);
    await runInitdb(options, passwordFile);
  } finally {
    await fs.rm(passwordFile, { force: true });
  }
}

function runInitdb(options: InitdbOptions, passwordFile: string): Promise<void> {
  const args = [
    `--pgdata=${options.dataDir}`,
    `--username=${options.user}`,
    `--pwfile=${passwordFile}`,
    "--auth=scram-sha-256",
    "--encoding=UTF8",
    // The C locale exists everywhere and keeps messages in English, which
    // the readiness check and error hints depend on.
    "--locale=C",
    "--no-instructions",
    ...(options.durable ? [] : ["--no-sync"]),
  ];
  const child = spawn(options.initdb, args, {
    cwd: path.dirname(options.dataDir),
    env: { ...process.env, LC_ALL: "C" },
    stdio: ["ignore", "pipe", "pipe"],
    ...(options.runAs ?? {}),
  });
  const output: string[] = [];
  const onLine = (line: string) => {
    output.push(line);
    options.log(line);
  };
  forEachLine(child.stdout, onLine);
  forEachLine(child.stderr, onLine);
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`initdb failed for ${options.dataDir} (code ${code}, signal ${signal}):\n${tail(output)}`));
    });
  });
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}
