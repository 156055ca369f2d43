"""Starts a thread at import that keeps a core busy: it must not make retraining look dearer.

The kit prices a retrain before the file is imported, so the thread cannot inflate the budget; it
runs during the runs, so its CPU is charged to this submission like any other work it does. Each
run waits until the process has used one more CPU second (the thread's, mostly), whatever the load.
"""

import threading
import time


def _spin() -> None:
    while True:
        pass


threading.Thread(target=_spin, daemon=True).start()


def unlearning(net, retain_loader, forget_loader, val_loader):
    end = time.process_time() + 1.0
    while time.process_time() < end:
        time.sleep(0.01)
