"""Media messages' files: what the content is (:mod:`.sniff`), how large each type may be
(:mod:`.limits`), fetching a send's ``url`` (:mod:`.fetch`), turning what a send brings into a
checked file (:mod:`.intake`), and keeping files where every node can serve them
(:mod:`.storage`). Between the manager and the engines: nothing here knows a session's state.
"""
