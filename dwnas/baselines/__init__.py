"""The compared methods, trained on the same data and measured by the same code as Double-Win.

MobileNetV2 (:mod:`.mobilenetv2`), DepthShrinker (:mod:`.depthshrinker`), HURRICANE
(:mod:`.hurricane`) and ODN (:mod:`.odn`); deep-only NAS is ``dwnas search --mode deep-only``.
What each follows from its paper and what is this project's choice: docs/methods.md.
"""
