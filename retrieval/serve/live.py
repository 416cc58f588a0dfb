"""Served collections that follow their folders.

Every write of a collection (``build --overwrite``, ``add``, ``delete``, ``reanchor``, ``reencode``)
renames a finished folder into place, so its ``manifest.json`` becomes another file. A served
collection looks at that file's identity (inode, modification time, size: one ``stat``) at most
once every ``every_s`` seconds, when a request asks for it; on a change it opens the new folder in
a background thread while the old collection keeps answering, and swaps it in once it has opened
(encoders warmed). A folder that does not open (half-copied by hand, another format) is not
swapped in: the old collection goes on answering, and the error is reported by ``/health`` until
the folder changes again.

This is what lets ``retrieval reencode`` upgrade a served collection's encoder without a restart:
the server, started with the new encoder as its query encoder (``serve --image-encoder NEW``),
answers new-encoder queries through the stitching route while the corpus is re-encoded beside it,
then directly once the re-encoded collection is in place.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

log = logging.getLogger("retrieval.serve")

Stamp = Optional[Tuple[int, int, int]]


def manifest_stamp(folder: Path) -> Stamp:
    """The identity of the folder's manifest; ``None`` while there is none (between two renames)."""
    try:
        st = os.stat(Path(folder) / "manifest.json")
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class LiveCollection:
    """One served collection: ``current()`` is what requests use; ``opener()`` opens the folder."""

    def __init__(self, folder, opener: Callable[[], object], every_s: float = 2.0):
        self.folder = Path(folder)
        self._opener = opener
        self.every_s = float(every_s)
        self._stamp = manifest_stamp(self.folder)
        self._current = opener()
        self._checked = time.monotonic()
        self._busy = threading.Lock()  # one reopen at a time
        self.reloads = 0
        self.error: Optional[str] = None  # why the folder now on disk is not the one served
        self._failed: Stamp = None

    def current(self):
        """The collection to answer with; starts a reopen in the background when the folder changed."""
        if self.every_s > 0 and time.monotonic() - self._checked >= self.every_s:
            self._checked = time.monotonic()
            if self._changed() and self._busy.acquire(blocking=False):
                threading.Thread(target=self._reload_locked, name=f"reload {self.folder.name}", daemon=True).start()
        return self._current

    def reload(self) -> bool:
        """Reopen now if the folder changed (blocking); True when a new collection was swapped in."""
        with self._busy:
            return self._reload()

    def _changed(self) -> bool:
        now = manifest_stamp(self.folder)
        return now is not None and now != self._stamp and now != self._failed

    def _reload_locked(self) -> None:
        try:
            self._reload()
        finally:
            self._busy.release()

    def _reload(self) -> bool:
        stamp = manifest_stamp(self.folder)
        if stamp is None or stamp == self._stamp or stamp == self._failed:
            return False
        try:
            new = self._opener()
        except Exception as exc:  # keep answering with what was served; say why on /health
            self._failed, self.error = stamp, f"{type(exc).__name__}: {exc}"
            log.warning("kept the collection served from %s: its new version did not open (%s)", self.folder,
                        self.error)
            return False
        if manifest_stamp(self.folder) != stamp:  # replaced again while opening: the next check takes it
            return False
        self._current, self._stamp, self._failed, self.error = new, stamp, None, None
        self.reloads += 1
        log.info("reopened %s (it was rewritten on disk)", self.folder)
        return True

    def status(self) -> Dict:
        return {"reloads": self.reloads, **({"reload_error": self.error} if self.error else {})}
