"""`storymesh gateway`: the optional HTTP face of the mesh (JSON API, Server-Sent Events, a page).

An ordinary client of the mesh: it reaches stories only through `story.submit`,
`story.watch`, `story.query` and MMI, never the journal. Needs the `web` extra
(FastAPI, uvicorn, sse-starlette); importing this package alone imports none of them.

- `keys`: API key files and the short-lived signed tokens for URLs (pure).
- `limits`: the submission token buckets and the open-stream gate (pure, time is an argument).
- `errors`: mesh error codes to HTTP statuses and the one error body.
- `mesh`: the gateway's side of the mesh: calls on a few threads, one pump for every watch.
- `feeds`: one watch per story fanned out to many event streams, with resumable event ids.
- `app`: the FastAPI application (routes, auth, limits, error handlers, the static page).
- `server`: uvicorn around the app; `run_gateway(settings, ...)` for the CLI.
"""
