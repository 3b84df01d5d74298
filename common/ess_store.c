/* ess_store -- not yet written */
