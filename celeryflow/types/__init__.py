"""Value types shared by the engine, the logbook and the API (TaskFlow's ``taskflow.types``)."""
