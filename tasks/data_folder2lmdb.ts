/**
 * `deno task data:folder2lmdb -- <data_dir> [--split train]...`: packs `<data_dir>/<split>` (an
 * ImageFolder) into `<data_dir>/<split>_lmdb/<split>.lmdb` plus `<data_dir>/<split>_list.json`,
 * the layout of the reference's preprocess/folder2lmdb.py. Never overwrites.
 */
import { parseArgs } from "node:util";
import { folderToLmdb } from "../lib/data/lmdb.ts";

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      split: { type: "string", multiple: true },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || positionals.length !== 1) {
    console.log(
      "deno task data:folder2lmdb -- <data_dir> [--split train] [--split val]\n\n" +
        "Writes <data_dir>/<split>_lmdb/<split>.lmdb (key '<wnid>/<file>', value: the image file)\n" +
        "and <data_dir>/<split>_list.json. Default splits: train and val (those present).",
    );
    Deno.exit(values.help ? 0 : 2);
  }
  const root = positionals[0];
  const splits = values.split ??
    ["train", "val"].filter((s) => {
      try {
        return Deno.statSync(`${root}/${s}`).isDirectory;
      } catch {
        return false;
      }
    });
  try {
    if (splits.length === 0) throw new Error(`${root}: no train/ or val/ folder (give --split)`);
    for (const s of splits) folderToLmdb(root, s, { log: (m) => console.error(m) });
  } catch (e) {
    console.error(`data:folder2lmdb: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
