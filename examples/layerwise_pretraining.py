"""Lesson: greedy layer-wise pretraining of a stacked autoencoder, then fine-tuning.

Before good initialisations, ReLUs and normalisation, deep sigmoid networks
trained by SGD often barely moved from their starting point. One remedy was to
*initialise* each layer with an autoencoder, greedily, one layer at a time:

    stage 1: train   x  -> h1 = σ(x W1 + b1)  -> x̂  as an AE on the images
    stage 2: freeze W1, compute the codes h1 of every image, and train
             h1 -> h2 = σ(h1 W2 + b2) -> ĥ1  as an AE on those codes
    stage 3: the same on h2 ...

Each stage solves a shallow, easy problem: reconstruct its own input. Stacking
the trained encoders gives a deep network whose layers already extract
structure. Then a softmax head is put on top and the WHOLE stack is fine-tuned
end to end as a classifier, starting from the pretrained weights.

Here: digits, layers 64 -> 48 -> 32 -> 16 with sigmoid units, a 16 -> 10 softmax
head, SGD with momentum (the era's recipe). Each stage's decoder outputs logits
and its loss is BCE-with-logits summed over the stage's inputs (pixels and
sigmoid codes both lie in [0, 1]), averaged over the batch.

The comparison is with the same network started from random (Xavier) weights,
trained as a classifier with the same optimizer, for
- the same number of fine-tuning updates (what pretraining buys for the
  supervised budget), and
- as many updates as pretraining + fine-tuning together (the same total
  number of optimizer steps, which is the fairer comparison on compute).
On this small data set the usual outcome is: pretrained >> random at the same
number of fine-tuning updates, and roughly a tie at the same total number of
updates. With Adam, ReLUs or a larger budget the random start catches up:
pretraining is a history lesson, not a modern necessity. The script prints
what it finds; nothing here assumes a winner.

Run:  python examples/layerwise_pretraining.py
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

import numpy as np

import minivae as mv
from minivae.training.data import Dataset, batches, load_digits

NUM_CLASSES = 10
BATCH_SIZE = 64
SIZES = (64, 48, 32, 16)


def make_layers(sizes: Sequence[int], rng: mv.random.Generator) -> list[mv.nn.Linear]:
    """The encoder stack; Xavier init suits sigmoid units (no ReLU here)."""
    return [mv.nn.Linear(a, b, rng=rng, init="xavier") for a, b in zip(sizes[:-1], sizes[1:])]


def sgd(params: list, lr: float, momentum: float) -> mv.optim.SGD:
    return mv.optim.SGD(params, lr=lr, momentum=momentum)


# ---------------------------------------------------------------------------
# Greedy pretraining, one layer at a time
# ---------------------------------------------------------------------------
def pretrain_layer(
    layer: mv.nn.Linear, inputs: np.ndarray, epochs: int, lr: float, momentum: float, rng: mv.random.Generator
) -> list[float]:
    """Train `layer` as the encoder of a one-hidden-layer AE on `inputs`; returns the mean loss per epoch.

    The decoder is a fresh Linear back to the input size; it is thrown away after the stage.
    """
    decoder = mv.nn.Linear(layer.out_features, layer.in_features, rng=rng, init="xavier")
    opt = sgd(layer.parameters() + decoder.parameters(), lr, momentum)
    history = []
    for _ in range(epochs):
        total = 0.0
        for xb, _ in batches(inputs, BATCH_SIZE, rng=rng):
            opt.zero_grad()
            logits = decoder(mv.sigmoid(layer(mv.tensor(xb))))
            loss = mv.losses.bce_with_logits(logits, xb, reduction="sum") * (1.0 / len(xb))
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        history.append(total / len(inputs))
    return history


def pretrain_stack(
    layers: list[mv.nn.Linear], images: np.ndarray, epochs: int, lr: float, momentum: float, rng: mv.random.Generator
) -> list[list[float]]:
    """Stage after stage: each layer is an AE on the codes of the layers below (which stay fixed)."""
    inputs = images
    histories = []
    for layer in layers:
        histories.append(pretrain_layer(layer, inputs, epochs, lr, momentum, rng))
        # The next stage's data: this layer's codes, computed once with the trained (now fixed) layer.
        with mv.no_grad():
            inputs = mv.sigmoid(layer(mv.tensor(inputs))).numpy()
    return histories


# ---------------------------------------------------------------------------
# The classifier and end-to-end training
# ---------------------------------------------------------------------------
def classify(layers: list[mv.nn.Linear], head: mv.nn.Linear, x: np.ndarray) -> mv.Tensor:
    """Logits of the deep sigmoid network: σ(...σ(x W1 + b1)...) then the linear head."""
    h = mv.tensor(x)
    for layer in layers:
        h = mv.sigmoid(layer(h))
    return head(h)


def nll(logits: mv.Tensor, labels: np.ndarray) -> mv.Tensor:
    """Mean negative log-likelihood of the labels under softmax(logits)."""
    return -(mv.log_softmax(logits, axis=-1) * mv.one_hot(labels, NUM_CLASSES)).sum(axis=-1).mean()


def train_classifier(
    layers: list[mv.nn.Linear],
    head: mv.nn.Linear,
    data: Dataset,
    updates: int,
    lr: float,
    momentum: float,
    rng: mv.random.Generator,
) -> float:
    """`updates` SGD steps on the NLL, ALL layers trainable; returns the mean NLL of the last epoch's batches."""
    opt = sgd([p for layer in layers for p in layer.parameters()] + head.parameters(), lr, momentum)
    done, recent = 0, []
    while done < updates:
        recent = []
        for xb, yb in batches(data, BATCH_SIZE, rng=rng):
            opt.zero_grad()
            loss = nll(classify(layers, head, xb), yb)
            loss.backward()
            opt.step()
            recent.append(loss.item())
            done += 1
            if done == updates:
                break
    return float(np.mean(recent))


def evaluate(layers: list[mv.nn.Linear], head: mv.nn.Linear, data: Dataset) -> dict[str, float]:
    with mv.no_grad():
        logits = classify(layers, head, data.x)
        loss = nll(logits, data.y).item()
    return {"accuracy": float(np.mean(logits.numpy().argmax(axis=-1) == data.y)), "nll": loss}


def random_start(seed: int) -> tuple[list[mv.nn.Linear], mv.nn.Linear, mv.random.Generator]:
    rng = mv.random.Generator(seed)
    return make_layers(SIZES, rng), mv.nn.Linear(SIZES[-1], NUM_CLASSES, rng=rng, init="xavier"), rng


def main(
    seed: int = 0,
    pretrain_epochs: int = 10,
    finetune_updates: int = 300,
    lr: float = 0.1,
    momentum: float = 0.9,
) -> dict[str, Any]:
    """Pretrain + fine-tune vs random init at equal fine-tuning and at equal total updates."""
    train, test = load_digits("train", seed=0), load_digits("test", seed=0)
    updates_per_epoch = -(-len(train) // BATCH_SIZE)  # ceil: the last batch is smaller but is still an update
    pretrain_updates = pretrain_epochs * updates_per_epoch * (len(SIZES) - 1)

    # Pretrained: the same random start, then the greedy stages, then a fresh head and fine-tuning.
    layers, head, rng = random_start(seed)
    histories = pretrain_stack(layers, train.x, pretrain_epochs, lr, momentum, rng)
    pre_train_nll = train_classifier(layers, head, train, finetune_updates, lr, momentum, rng)
    pretrained = {**evaluate(layers, head, test), "last_epoch_train_nll": pre_train_nll}

    # Random init, same number of fine-tuning updates. (Same seed: the same initial weights the
    # pretrained network started from before its pretraining stages.)
    layers, head, rng = random_start(seed)
    same_ft_nll = train_classifier(layers, head, train, finetune_updates, lr, momentum, rng)
    random_same_ft = {**evaluate(layers, head, test), "last_epoch_train_nll": same_ft_nll}

    # Random init, as many updates as pretraining + fine-tuning together.
    layers, head, rng = random_start(seed)
    same_total_nll = train_classifier(layers, head, train, pretrain_updates + finetune_updates, lr, momentum, rng)
    random_same_total = {**evaluate(layers, head, test), "last_epoch_train_nll": same_total_nll}

    return {
        "seed": seed,
        "sizes": list(SIZES),
        "budget": {
            "pretrain_epochs_per_layer": pretrain_epochs,
            "pretrain_updates": pretrain_updates,
            "finetune_updates": finetune_updates,
            "lr": lr,
            "momentum": momentum,
        },
        "pretraining_stages": [
            {"layer": f"{a}->{b}", "first_epoch_loss": h[0], "last_epoch_loss": h[-1]}
            for (a, b), h in zip(zip(SIZES[:-1], SIZES[1:]), histories)
        ],
        "pretrained_finetuned": pretrained,
        "random_same_finetune_updates": random_same_ft,
        "random_same_total_updates": random_same_total,
    }


def _print(results: dict[str, Any]) -> None:
    b = results["budget"]
    print(f"Stacked sigmoid AE {' -> '.join(map(str, results['sizes']))}, SGD lr {b['lr']} momentum {b['momentum']}")
    print("greedy pretraining (BCE per example, first -> last epoch):")
    for stage in results["pretraining_stages"]:
        print(f"  layer {stage['layer']:>7}: {stage['first_epoch_loss']:7.2f} -> {stage['last_epoch_loss']:7.2f}")
    rows = [
        (f"pretrained + {b['finetune_updates']} fine-tuning updates", results["pretrained_finetuned"]),
        (f"random init, {b['finetune_updates']} updates", results["random_same_finetune_updates"]),
        (f"random init, {b['pretrain_updates'] + b['finetune_updates']} updates (= total)", results["random_same_total_updates"]),
    ]
    print(f"{'classifier':<42} {'test acc':>9} {'test NLL':>9}")
    for name, r in rows:
        print(f"{name:<42} {r['accuracy']:>9.3f} {r['nll']:>9.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--finetune-updates", type=int, default=300)
    args = parser.parse_args()
    _print(main(seed=args.seed, pretrain_epochs=args.pretrain_epochs, finetune_updates=args.finetune_updates))
