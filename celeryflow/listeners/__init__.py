"""Listeners (TaskFlow's ``taskflow.listeners``): react to an engine's flow and atom events.

``with PrintingListener(engine): engine.run()`` registers the listener's callbacks
on ``engine.notifier`` and ``engine.atom_notifier`` on entry and removes them on
exit, as in TaskFlow. Callbacks run in the process that called ``run()``, even
when the atoms ran on remote workers (the events are replayed from the logbook).
"""
