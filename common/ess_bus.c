/* ess_bus -- not yet written */
