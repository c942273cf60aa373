"""A lesson's loss log: one row per training run, printed as it is added and as a table at the end (lessons 02, 03, 05).

The lectures keep a running log of what each change did to the train and dev loss; the lessons do
the same with a `LossLog`:

    log = LossLog()
    result = train(model, splits, cfg)
    log.add("10-D embedding, 200 hidden", parameters=model.n_parameters(), steps=result.steps, **result.final)
    log.show()        # the whole table, in the order the runs were added

A run added again under the same name replaces its row, so re-running a cell does not add a second one.
Lesson 05 also logs each run's training time (`seconds=result.seconds`); the table then has a seconds column.
"""

from __future__ import annotations

from typing import Any


class LossLog:
    """Rows `name -> {"parameters", "steps", "train", "dev"}` (and "seconds" where given), in the order first added."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def add(self, name: str, *, parameters: int, steps: int, train: float, dev: float,
            seconds: float | None = None) -> None:
        """Record one run (its train and dev loss: the test split is looked at once, at the end) and print its line.

        `seconds`, the run's training time, is optional; a log whose runs all have one shows it in its table.
        """
        self.rows[name] = {"parameters": parameters, "steps": steps, "train": train, "dev": dev}
        if seconds is not None:
            self.rows[name]["seconds"] = seconds
        print(self.line(name))

    def line(self, name: str) -> str:
        r = self.rows[name]
        took = f" in {r['seconds']:.0f} s" if "seconds" in r else ""
        return (f"{name}: {r['parameters']:,} parameters; train {r['train']:.4f}  dev {r['dev']:.4f}  "
                f"({r['steps']:,} steps{took})")

    def table(self) -> str:
        width = max([len("change")] + [len(n) for n in self.rows])
        timed = bool(self.rows) and all("seconds" in r for r in self.rows.values())
        lines = [f"{'change':<{width}} {'parameters':>10} {'steps':>8} {'train':>7} {'dev':>7}"
                 + (f" {'seconds':>8}" if timed else "")]
        for name, r in self.rows.items():
            lines.append(f"{name:<{width}} {r['parameters']:>10,} {r['steps']:>8,} {r['train']:>7.4f} {r['dev']:>7.4f}"
                         + (f" {r['seconds']:>8.0f}" if timed else ""))
        return "\n".join(lines)

    def show(self) -> None:
        print(self.table())

    def to_list(self) -> list[dict[str, Any]]:
        """The rows as plain dicts, for a lesson's metrics."""
        return [{"change": name, **r} for name, r in self.rows.items()]

    def __len__(self) -> int:
        return len(self.rows)
