/**
 * Fashion-MNIST provisioning: checksum verification and origin records, on fake package folders;
 * the real Debian files too when the package is installed.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import * as D from "../lib/data/mod.ts";

const gz = async (bytes: Uint8Array<ArrayBuffer>) =>
  new Uint8Array(
    await new Response(new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip")))
      .arrayBuffer(),
  );

Deno.test("a package folder whose files fail their SHA-256 is refused, naming the file", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const fake = join(tmp, "pkg");
    await Deno.mkdir(fake);
    for (const f of D.FASHION_MNIST_FILES) {
      await Deno.writeFile(join(fake, f), await gz(new TextEncoder().encode(`not ${f}`)));
    }
    await assert.rejects(
      D.provideFashionMnist({
        dest: join(tmp, "out"),
        debianDir: fake,
        apt: false,
        url: null,
        log: () => {},
      }),
      (e: Error) =>
        /could not provide Fashion-MNIST/.test(e.message) &&
        /train-images-idx3-ubyte\.gz: SHA-256 [0-9a-f]{64}, expected Debian's b0564c3e/.test(
          e.message,
        ),
    );
    assert.ok(!existsSync(join(tmp, "out")), "nothing is installed from a failed source");
    await assert.rejects(
      D.provideFashionMnist({
        dest: join(tmp, "out"),
        debianDir: join(tmp, "none"),
        apt: false,
        url: null,
        log: () => {},
      }),
      /installed package: .*none not found/,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test({
  name: "the installed Debian package provides verified data, then the cache is reused",
  ignore: !existsSync(join(D.DEBIAN_DIR, D.FASHION_MNIST_FILES[0])),
  fn: async () => {
    const tmp = await Deno.makeTempDir();
    try {
      const dest = join(tmp, "fashion-mnist");
      const p = await D.provideFashionMnist({ dest, apt: false, url: null });
      assert.deepEqual([p.origin, p.from], ["debian-installed", D.DEBIAN_DIR]);
      const rec = JSON.parse(Deno.readTextFileSync(join(dest, "SOURCE.json")));
      assert.equal(rec.origin, "debian-installed");
      const again = await D.provideFashionMnist({ dest, apt: false, url: null });
      assert.equal(again.origin, "cache");
      const ds = await D.loadMnist(dest, { split: "test" });
      try {
        assert.equal(ds.size, 10000);
        assert.equal(ds.classes[0], "T-shirt/top");
      } finally {
        ds.dispose();
      }
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
