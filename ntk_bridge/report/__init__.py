"""The collected report: result schemas declared once (:mod:`.schemas`), loading (:mod:`.loading`),
validation-side selection (:mod:`.selection`), typed claims (:mod:`.claims`), figures (:mod:`.figures`),
the markdown sections (:mod:`.sections`) and the assembly (:mod:`.build`).
"""
