"""Running declarative model specs (see :mod:`proxyscope.spec` for the format).

- :mod:`proxyscope.specs.check`: check data against a spec without fitting
  (what ``proxyscope validate`` prints);
- :mod:`proxyscope.specs.execute`: execute a spec end to end — data, fit,
  analyses, comparisons, the sensitivity analysis and the report (what
  ``proxyscope run`` and ``proxyscope demo`` do).

The private modules read (``_read``) and write (``_toml``) TOML.
"""
