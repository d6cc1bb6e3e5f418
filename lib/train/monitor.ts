/** Evaluation during and after training: features per width and the kNN monitor. */
import { noGrad } from "../autograd.ts";
import { knnAccuracy, type KnnOptions } from "../eval/knn.ts";
import type { SlimmableResNet } from "../models/slimmable_resnet.ts";
import { scope } from "../scope.ts";
import { cat, type Tensor } from "../tensor.ts";
import type { LabeledSplit } from "./source.ts";

/** Pooled backbone features of `images` at the active width, in eval mode, batch by batch. */
export function extractFeatures(net: SlimmableResNet, images: Tensor, batch = 256): Tensor {
  const wasTraining = net.training;
  net.eval();
  try {
    return noGrad(() =>
      scope(() => {
        const device = net.parameters()[0]?.device ?? "cpu";
        const parts: Tensor[] = [];
        for (let i = 0; i < images.shape[0]; i += batch) {
          const n = Math.min(batch, images.shape[0] - i);
          const x = images.narrow(0, i, n);
          parts.push(net.features(device === "cpu" ? x : x.to(device)).to("cpu"));
        }
        return cat(parts);
      })
    );
  } finally {
    net.train(wasTraining);
  }
}

/**
 * kNN top-1 (0–1) of every width: training split as the bank, test split as the queries. The
 * features, labels and similarity search live on the network's device (on the CPU nothing is
 * copied).
 */
export function knnPerWidth(
  net: SlimmableResNet,
  train: LabeledSplit,
  test: LabeledSplit,
  o: KnnOptions = {},
): Map<number, number> {
  const device = net.parameters()[0]?.device ?? "cpu";
  const here = (t: Tensor) => (device === "cpu" ? t : t.to(device));
  return scope(() => {
    const bankLabels = here(train.labels);
    const queryLabels = here(test.labels);
    const out = new Map<number, number>();
    for (const w of net.widths) {
      const acc = net.withWidth(w, () =>
        scope(() => {
          const bank = here(extractFeatures(net, train.images));
          const queries = here(extractFeatures(net, test.images));
          return knnAccuracy(bank, bankLabels, queries, queryLabels, train.numClasses, o);
        }));
      out.set(w, acc);
    }
    return out;
  });
}
