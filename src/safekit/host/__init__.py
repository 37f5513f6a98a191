"""What safekit keeps and finds on a host, used by safekitd, the `safekit` command, the API and the
replication process alike: where its files are (`paths`), state written to survive a crash
(`persist`), the priority of what it starts (`priority`), a module's packages, fingerprints and boot
setting (`module_packages`), the client end of safekitd's control socket (`control_client`), its
mounts (found and removed without ever looking through them) and the processes it started
(recognised by pid, start time and command line)."""
