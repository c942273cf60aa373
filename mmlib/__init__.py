"""mmlib: the shared library of the makemore course.

Each lesson builds an idea in the open; once built, it lives here and later lessons import it.
One module per idea, so a helper can be found from the file names, under three headings: the library the
lessons teach, the course's machinery around it, and the command line.

## The lessons' library: what the lessons build, imported by the lessons after them

- `mmlib.micrograd` a scalar autograd engine (`Value`), and Neuron/Layer/MLP built on it       (lesson 00)
- `mmlib.data`      reading word files, splitting them, building (context, next char) datasets  (lesson 01, 02)
- `mmlib.vocab`     the character vocabulary with `.` as the start/end token                   (lesson 01)
- `mmlib.runtime`   seeding, device choice and notebook defaults in one call; `eval_mode`      (lesson 01)
- `mmlib.validate`  the one place parameters are checked, with messages that say how to fix them (lesson 01 onwards)
- `mmlib.timing`    timing a piece of code: the fastest of several rounds                      (lesson 02, 04)
- `mmlib.models`    the course's models behind one call, `logits, loss = model(idx, targets)`  (lesson 02 onwards)
- `mmlib.train`     one training loop for every model (`train`, `TrainConfig`) and `evaluate`  (lesson 02 onwards)
- `mmlib.sample`    drawing words from any next-character model                                (lesson 01, 02)
- `mmlib.layers`    Linear, BatchNorm1d, Tanh, ... with torch.nn's call shapes, in plain tensors, and
                    `LayerModel`, a stack of them with the models' call                         (lesson 03);
                    Embedding, FlattenConsecutive, Sequential, the WaveNet as a layer stack   (lesson 05)

## The course: what a lesson needs around the library to teach, check and show it

- `mmlib.metrics`   every lesson's headline numbers in one schema, written as JSON              (lesson 01)
- `mmlib.losslog`   a lesson's running log of runs and their train/dev losses                  (lesson 02, 03, 05)
- `mmlib.plots`     the small plotting helpers the lessons share; expression graphs            (lesson 00 onwards)
- `mmlib.diagnostics` per-layer activation, gradient and update:data statistics and plots      (lesson 03)
- `mmlib.widgets`   one neuron's graph, every value and gradient                               (lesson 00);
                    the initialisation and training-statistics explorers (ipywidgets)          (lesson 03);
                    the WaveNet's receptive-field explorer                                   (lesson 05);
                    attention maps of a trained transformer, and sampling with temperature/top-k (lesson 06)
- `mmlib.gradcheck` comparing hand-written gradients with autograd, one row per variable      (lesson 04)
- `mmlib.checks`    exercise checks that tell a learner what is wrong and by how much          (lesson 01 onwards)
- `mmlib.expected`  the independent computations the exercise checks compare against           (lesson 01 onwards)
- `mmlib.results`   every lesson's committed metrics read back: the course-wide table and plot  (lesson 06, README)
- `mmlib.notebooks` running a notebook (papermill, a time limit per cell): tests, results, the builder below
- `mmlib.learner_notebooks` builds the learner notebooks from the solution notebooks (course tooling)

## The command line: `makemore train/sample/eval` on any word list (no lesson imports it)

- `mmlib.cli`              the commands (also `python -m mmlib`) and their one-line errors
- `mmlib.cli.errors`       `CLIError`, the command line's one error type
- `mmlib.cli.flags`        the flags, made from the config dataclasses' typed fields
- `mmlib.cli.recipes`      the default recipe for each model, each with its reason
- `mmlib.cli.runs`         a run folder: run.json, checkpoints, atomic writes, the lock, resume checks
- `mmlib.cli.memory`       what a training step needs in memory, checked before a run starts
- `mmlib.cli.distributed`  training on several processes under torchrun (DDP)

Lessons import from the submodules (`from mmlib.data import load_words`), so the reader sees
where each helper lives.
"""

__version__ = "0.1.0"
