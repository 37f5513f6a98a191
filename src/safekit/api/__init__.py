"""The REST API (`/api/v1`, HTTPS on 9453) and the web console that safekitd serves.

`app` builds the ASGI application over a small node interface (`NodeControl`); `server` runs it
inside safekitd's event loop; `auth` owns users, tokens, sessions and roles; `certs` the cluster
CA and the node certificates; `client` is how `safekit -H` reaches other nodes. See docs/api.md.
"""
