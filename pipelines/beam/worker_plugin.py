"""Beam's plugin hook on SDK workers: being imported is this module's only job.

``worker_options()`` names it in ``--beam_plugin``; Beam's ``sdk_worker_main``
imports every module named there before the worker processes a bundle
(``_import_beam_plugins``), which is the one place a worker process can be
prepared before it runs user code.  Nothing else imports it.
"""

from curate.pipelines.beam import install_on_worker

install_on_worker()
