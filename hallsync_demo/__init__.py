"""``hall demo``: the whole system on one machine, in one process tree.

A broker (the system's Mosquitto if installed, else an embedded pure-Python one), central, a simulated
hall of a dozen EGMs and two terminals, and that hall's agent — each a child process with its log in the
data directory — so a newcomer sees real events reach HQ's dashboard with one command. It is a demo,
not a deployment: everything listens on loopback and the broker has no TLS or ACL (see systemd/).
"""
