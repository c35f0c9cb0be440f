"""A generic REST ERP: a declarative mapping (:mod:`.mapping`), pluggable request signing
(:mod:`.signing`) and the connector that books our commands through them (:mod:`.connector`)."""
