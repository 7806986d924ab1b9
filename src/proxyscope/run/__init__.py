"""What checks and executes a declarative model spec (the format is :mod:`proxyscope.spec`).

- :mod:`~proxyscope.run.execute`: :func:`run_spec`, a spec end to end (``proxyscope run``);
- :mod:`~proxyscope.run.check`: data checked against a spec, no fit (``proxyscope validate``);
- :mod:`~proxyscope.run.load`: a spec's data section read into cells;
- :mod:`~proxyscope.run.fit`: the spec's model fitted to cells;
- :mod:`~proxyscope.run.transport`, :mod:`~proxyscope.run.comparisons`,
  :mod:`~proxyscope.run.sensitivity`, :mod:`~proxyscope.run.rolling`: the further
  analyses a spec may ask for (the stability of a model over time is computed with
  the others in :mod:`~proxyscope.run.execute`);
- :mod:`~proxyscope.run.result` and :mod:`~proxyscope.run.outputs`: what a run
  produced and the files it writes; :mod:`~proxyscope.run.text` (and
  :mod:`~proxyscope.run.text_time`, its parts about time): its text and Markdown
  renderings;
- :mod:`~proxyscope.run.progress`: the ``log`` callable every step reports to;
- :mod:`~proxyscope.run.demo`: the demo's embedded spec.

Nothing is imported here: ``proxyscope validate`` loads the checks without PyMC.
"""
