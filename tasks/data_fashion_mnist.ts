/**
 * `deno task data:fashion-mnist`: provides Fashion-MNIST in the project cache
 * (`.cache/datasets/fashion-mnist`) from the Debian package's files, its .deb, or the official
 * download, verified against committed SHA-256 sums; prints where the data came from.
 */
import { parseArgs } from "node:util";
import { provideFashionMnist } from "../lib/data/fashion_mnist.ts";

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      dest: { type: "string" },
      "no-download": { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(
      "deno task data:fashion-mnist [--dest DIR] [--no-download]\n\n" +
        "Copies Fashion-MNIST into the project cache from /usr/share/datasets/fashion-mnist\n" +
        "(Debian package dataset-fashion-mnist), else from its .deb (apt-get download +\n" +
        "dpkg-deb -x, no root install), else from the official download, verifying SHA-256 sums.",
    );
    Deno.exit(0);
  }
  try {
    const p = await provideFashionMnist({
      dest: values.dest,
      url: values["no-download"] ? null : undefined,
    });
    console.log(`fashion-mnist: ${p.dir} (origin: ${p.origin}, from ${p.from})`);
  } catch (e) {
    console.error(`data:fashion-mnist: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
