/* ess_event -- not yet written */
