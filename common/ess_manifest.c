/* ess_manifest -- not yet written */
