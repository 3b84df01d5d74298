/* ess_stats -- not yet written */
