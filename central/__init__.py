"""hall-central: the HQ server. It speaks to halls only through ``protocols/``; never imports the agent."""
