"""The apps built on fastact, beside the library and never under it:

    fastact train    (fastact_apps.train)  the tutorial models, torch vs fastact
    fastact bench    (fastact_apps.bench)  fastact against stock torch, op by op
    fastact info     (fastact_apps.cli)    which backend runs the ops

They use fastact's public API only; the library never imports them. The
command line (cli.py) imports an app only when its command runs."""
