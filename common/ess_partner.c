/* ess_partner -- not yet written */
