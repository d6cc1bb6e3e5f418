/**
 * Signals sent to the outermost process of a task, as users start tasks: `deno task X`,
 * `npx deno task X` and `deno task launch`. A SIGTERM there (what a scheduler or container runtime
 * sends) or a Ctrl-C to the whole process group must stop the trainer after its step with a
 * checkpoint and the resume hint, and no process may outlive the command for long.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { PROJECT_ROOT } from "../lib/ffi/paths.ts";

const hasSetsid = existsSync("/usr/bin/setsid") || existsSync("/bin/setsid");
const npx = ["/usr/bin/npx", "/usr/local/bin/npx"].find((p) => existsSync(p)) ??
  (Deno.env.get("PATH") ?? "").split(":").map((d) => join(d, "npx")).find((p) => existsSync(p));

/** Processes of process group `pgid` still running. */
function groupMembers(pgid: number): number[] {
  const pids: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(f[2]) === pgid && f[0] !== "Z") pids.push(Number(e));
    } catch { /* gone meanwhile */ }
  }
  return pids;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts `cmd` in a new process group, waits until its run folder logs `steps` train rows, sends
 * `signal` to the outermost process (`to: "leader"`) or to the whole group (`"group"`, as Ctrl-C
 * does), and returns its exit code, output and the processes of the group left after 15 s.
 */
async function stopDuring(
  cmd: string[],
  runDir: string,
  signal: Deno.Signal,
  to: "leader" | "group",
): Promise<{ code: number; output: string; left: number[] }> {
  const child = new Deno.Command("setsid", {
    args: cmd,
    cwd: PROJECT_ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { DENO_NO_UPDATE_CHECK: "1" },
  }).spawn();
  const out = (async () => {
    const [a, b] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]);
    return a + b;
  })();
  const metrics = join(runDir, "metrics.jsonl");
  for (let i = 0; i < 1800; i++) {
    const rows = existsSync(metrics) ? readFileSync(metrics, "utf8").split("\n") : [];
    if (rows.filter((r) => r.includes('"kind":"train"')).length >= 2) break;
    await sleep(100);
  }
  if (to === "group") Deno.kill(-child.pid, signal);
  else child.kill(signal);
  const { code } = await child.status;
  let left = groupMembers(child.pid);
  for (let i = 0; i < 150 && left.length; i++) {
    await sleep(100);
    left = groupMembers(child.pid);
  }
  for (const pid of left) Deno.kill(pid, "SIGKILL");
  return { code, output: await out, left };
}

/** The demo recipe, small: 16 steps an epoch of a narrow network, far more epochs than it runs. */
const pretrainArgs = (out: string, name: string) => [
  "--config",
  "configs/demo_fashion_mnist.yaml",
  "--data.subset=1024",
  "--data.batch_size=64",
  "--model.base_width=8",
  "--schedule.epochs=100",
  "--run.knn_every=0",
  "--run.ckpt_every=0",
  "--run.log_every=1",
  `--run.out=${out}`,
  `--run.name=${name}`,
];

function assertStoppedWithCheckpoint(output: string, runDir: string) {
  const m = /stopped by a signal at step (\d+); checkpoint (\S+)\. Continue with --resume auto/
    .exec(output);
  assert.ok(m, output.slice(-2000));
  assert.ok(m[2].startsWith(join(runDir, "checkpoints")), m[2]);
  assert.ok(existsSync(m[2]), `${m[2]} was not written`);
}

const cases: {
  name: string;
  cmd: (out: string, name: string) => string[];
  signal: Deno.Signal;
  to: "leader" | "group";
  code: number | null;
  ignore?: boolean;
}[] = [
  {
    name: "deno task pretrain, SIGTERM to deno task",
    cmd: (o, n) => [Deno.execPath(), "task", "pretrain", ...pretrainArgs(o, n)],
    signal: "SIGTERM",
    to: "leader",
    code: 130,
  },
  {
    name: "deno task pretrain, Ctrl-C (SIGINT to the process group)",
    cmd: (o, n) => [Deno.execPath(), "task", "pretrain", ...pretrainArgs(o, n)],
    signal: "SIGINT",
    to: "group",
    code: 130,
  },
  {
    // npm's exec dies of the SIGTERM and its shell with it; the trainer sees its launcher go.
    name: "npx deno task pretrain, SIGTERM to npx",
    cmd: (o, n) => [npx!, "deno", "task", "pretrain", ...pretrainArgs(o, n)],
    signal: "SIGTERM",
    to: "leader",
    code: null,
    ignore: !npx,
  },
  {
    name: "deno task launch --nproc 1 pretrain, SIGTERM to deno task",
    cmd: (o, n) => [
      Deno.execPath(),
      "task",
      "launch",
      "--nproc",
      "1",
      "tasks/pretrain.ts",
      ...pretrainArgs(o, n),
    ],
    signal: "SIGTERM",
    to: "leader",
    code: 130,
  },
  {
    name: "deno task supervised, SIGTERM to deno task",
    cmd: (o, n) => [
      Deno.execPath(),
      "task",
      "supervised",
      "--config",
      "configs/demo_supervised_fashion_mnist.yaml",
      "--data.subset=1024",
      "--data.batch_size=64",
      "--model.base_width=8",
      "--schedule.epochs=100",
      "--run.ckpt_every=0",
      "--run.log_every=1",
      `--run.out=${o}`,
      `--run.name=${n}`,
    ],
    signal: "SIGTERM",
    to: "leader",
    code: 130,
  },
];

for (const c of cases) {
  Deno.test({
    name: `signals reach the trainer: ${c.name}`,
    ignore: !hasSetsid || c.ignore,
    async fn() {
      const out = await Deno.makeTempDir();
      try {
        const runDir = join(out, "run");
        const r = await stopDuring(c.cmd(out, "run"), runDir, c.signal, c.to);
        if (c.code !== null) assert.equal(r.code, c.code, r.output.slice(-2000));
        assertStoppedWithCheckpoint(r.output, runDir);
        assert.deepEqual(r.left, [], "processes outlived the command by 15 s");
      } finally {
        await Deno.remove(out, { recursive: true });
      }
    },
  });
}
