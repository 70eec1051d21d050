"""Bitstreams for boards: board files (:mod:`.boards`), the fit check (:mod:`.fit`), the tool flow
(:mod:`.flow`: plan, then yosys / nextpnr / icepack or ecppack) and the build report (:mod:`.report`).
Submodules are imported on use."""
