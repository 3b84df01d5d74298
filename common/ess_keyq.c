/* ess_keyq -- not yet written */
