/**
 * The torchrun environment contract: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
 * MASTER_PORT (set by `deno task launch`, by `torchrun --no-python`, or by hand). Under SLURM
 * without torchrun, SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID stand in for the ranks and
 * MASTER_ADDR falls back to SLURM_LAUNCH_NODE_IPADDR.
 */

/** Where this process sits in a data-parallel job. */
export interface DistEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
  /** torchrun's agent already serves the store on MASTER_PORT: every rank connects as a client. */
  agentStore: boolean;
  /** torchrun's restart count (scopes the store keys of each attempt). */
  restart: number;
  /** Where the values came from. */
  source: "torchrun" | "slurm" | "single";
}

/** The default rendezvous port (torchrun's). */
export const DEFAULT_MASTER_PORT = 29500;

function int(env: Record<string, string | undefined>, key: string): number | undefined {
  const v = env[key];
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${key}=${v} is not a whole number`);
  return n;
}

/** Reads the environment (or `env`); a process without WORLD_SIZE/RANK is a single-rank job. */
export function distEnv(env: Record<string, string | undefined> = Deno.env.toObject()): DistEnv {
  let source: DistEnv["source"] = "torchrun";
  let rank = int(env, "RANK");
  let worldSize = int(env, "WORLD_SIZE");
  let localRank = int(env, "LOCAL_RANK");
  let localWorldSize = int(env, "LOCAL_WORLD_SIZE");
  if (rank === undefined && worldSize === undefined && env.SLURM_PROCID !== undefined) {
    source = "slurm";
    rank = int(env, "SLURM_PROCID");
    worldSize = int(env, "SLURM_NTASKS");
    localRank = int(env, "SLURM_LOCALID");
    localWorldSize = int(env, "SLURM_NTASKS_PER_NODE");
  }
  if (rank === undefined && worldSize === undefined) source = "single";
  rank ??= 0;
  worldSize ??= 1;
  if (rank >= worldSize) throw new RangeError(`RANK=${rank} is not below WORLD_SIZE=${worldSize}`);
  const masterAddr = env.MASTER_ADDR ?? env.SLURM_LAUNCH_NODE_IPADDR ?? "127.0.0.1";
  if (worldSize > 1 && env.MASTER_ADDR === undefined && source !== "slurm") {
    throw new Error(`WORLD_SIZE=${worldSize} but MASTER_ADDR is not set`);
  }
  return {
    rank,
    worldSize,
    localRank: localRank ?? rank,
    localWorldSize: localWorldSize ?? worldSize,
    masterAddr,
    masterPort: int(env, "MASTER_PORT") ?? DEFAULT_MASTER_PORT,
    agentStore: (env.TORCHELASTIC_USE_AGENT_STORE ?? "").toLowerCase() === "true",
    restart: int(env, "TORCHELASTIC_RESTART_COUNT") ?? 0,
    source,
  };
}

/** The variables a launcher sets for rank `rank` of `worldSize` local ranks. */
export function rankEnv(
  rank: number,
  worldSize: number,
  masterAddr: string,
  masterPort: number,
): Record<string, string> {
  return {
    RANK: String(rank),
    WORLD_SIZE: String(worldSize),
    LOCAL_RANK: String(rank),
    LOCAL_WORLD_SIZE: String(worldSize),
    MASTER_ADDR: masterAddr,
    MASTER_PORT: String(masterPort),
  };
}
