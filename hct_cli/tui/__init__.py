"""The conductor: a live view of a run (``hct perform`` on a terminal) and of a journaled one
(``hct replay``). An observer of engine events: the engine never imports it."""
