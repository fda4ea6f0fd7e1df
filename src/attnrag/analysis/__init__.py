"""Token-level attention analysis: do the reader's answer tokens attend to answer-related passage tokens?

Modules, in data-flow order: ``token_attention`` (attention per passage token), ``relatedness``
(which tokens relate to the answer / question), ``indicators`` (per-question and set statistics, the
trainer hook), ``report`` (figures, HTML), ``analyze`` (several runs -> report) and ``diagnose``
(one reader -> verdict). See ``docs/analysis.md``.
"""
