/** Evaluation during and after training: features per width and the kNN monitor. */
import { noGrad } from "../autograd.ts";
import { knnAccuracy, type KnnOptions } from "../eval/knn.ts";
import type { SlimmableResNet } from "../models/slimmable_resnet.ts";
import { scope } from "../scope.ts";
import { cat, type Tensor } from "../tensor.ts";
import type { LabeledSplit } from "./source.ts";
import { deviceOf, onDevice } from "./eval_setup.ts";

/**
 * Pooled backbone features of `images` (in host or device memory) at the active width, in eval
 * mode, batch by batch on the network's device, where the result stays.
 */
export function extractFeatures(net: SlimmableResNet, images: Tensor, batch = 256): Tensor {
  const wasTraining = net.training;
  net.eval();
  try {
    const device = deviceOf(net);
    return noGrad(() =>
      scope(() => {
        const parts: Tensor[] = [];
        for (let i = 0; i < images.shape[0]; i += batch) {
          const n = Math.min(batch, images.shape[0] - i);
          // One scope per batch: only its features outlive it.
          parts.push(scope(() => net.features(onDevice(images.narrow(0, i, n), device))));
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
  return knnPerWidthOn(net, train, [test], o)[0];
}

/**
 * kNN top-1 (0–1) of every width for each of several query splits against one bank: the bank's
 * features are extracted once per width.
 */
export function knnPerWidthOn(
  net: SlimmableResNet,
  train: LabeledSplit,
  queries: readonly LabeledSplit[],
  o: KnnOptions = {},
): Map<number, number>[] {
  const device = deviceOf(net);
  return scope(() => {
    const bankLabels = onDevice(train.labels, device);
    const out = queries.map(() => new Map<number, number>());
    for (const w of net.widths) {
      net.withWidth(w, () =>
        scope(() => {
          const bank = extractFeatures(net, train.images);
          queries.forEach((q, i) => {
            const features = extractFeatures(net, q.images);
            const labels = onDevice(q.labels, device);
            out[i].set(w, knnAccuracy(bank, bankLabels, features, labels, train.numClasses, o));
          });
        }));
    }
    return out;
  });
}
