"""The long jobs - ``run``, ``demo``, ``ablate`` - over one set of stage steps (:mod:`.steps`), resumable
through the stage keys and markers of :mod:`.stages`."""
