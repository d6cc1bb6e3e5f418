/**
 * `deno task data:im2rec -- <prefix> <root> [--no-shuffle] [--seed 100]`: packs the ImageFolder
 * at `<root>` into `<prefix>.lst`, `<prefix>.rec` and `<prefix>.idx` (MXNet RecordIO, as
 * im2rec.py --recursive; images are stored as they are, not re-encoded). Never overwrites.
 */
import { parseArgs } from "node:util";
import { im2rec } from "../lib/data/recordio.ts";

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      "no-shuffle": { type: "boolean", default: false },
      seed: { type: "string", default: "100" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || positionals.length !== 2) {
    console.log(
      "deno task data:im2rec -- <prefix> <root> [--no-shuffle] [--seed 100]\n\n" +
        "Writes <prefix>.lst (index, label, path), <prefix>.rec and <prefix>.idx.",
    );
    Deno.exit(values.help ? 0 : 2);
  }
  try {
    await im2rec(positionals[0], positionals[1], {
      shuffle: !values["no-shuffle"],
      seed: Number(values.seed),
      log: (m) => console.error(m),
    });
  } catch (e) {
    console.error(`data:im2rec: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
