"""Agent that runs on each smart cabinet and drives its board over the serial protocol."""
