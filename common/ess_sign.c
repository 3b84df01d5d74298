/* ess_sign -- not yet written */
