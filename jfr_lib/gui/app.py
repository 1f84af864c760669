"""The dashboard's Starlette application: pages, the JSON API they poll, and the actions.

Pages are small HTML shells; each loads the dashboard's own JavaScript, which
reads ``/api/...`` and redraws the page every few seconds, without reloading it.

Routes
------
``GET /``, ``/jobs``, ``/jobs/{id}``, ``/flows``, ``/flows/{id}``, ``/report``
    The pages.
``GET /api/overview``, ``/api/jobs``, ``/api/jobs/{id}``, ``/api/jobs/{id}/output``,
``/api/jobs/{id}/files``, ``/api/flows``, ``/api/flows/{id}``, ``/api/report``
    What the pages show, as JSON.
``POST /api/jobs/{id}/{verb}``, ``/api/flows/{id}/{verb}``
    The actions (refused with 403 in read-only mode).
``GET /static/...``
    The stylesheet and the scripts, served from the package (no network needed).

Every route is behind :class:`~jfr_lib.gui.auth.TokenMiddleware`. A refusal of
jfr (a state that forbids an action, a job that does not exist) answers
``{"error": "<the command line's one-line message>"}`` with 409, 404 or 400.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from jfr_lib.errors import JfrError, NotFoundError, StateError, UsageError

log = logging.getLogger("jfr.gui")
HERE = Path(__file__).resolve().parent
#: Seconds between two refreshes of a page (its script polls the API).
REFRESH_SECONDS = 3.0


class Databases:
    """The queue database of each server thread, opened at first use and closed at shutdown.

    Starlette runs the API's functions in a pool of threads (up to about 40). A
    SQLite connection (and its transactions) must not be shared between threads:
    each thread opens its own. A MongoDB client is safe to share and holds a pool
    of connections: one is opened and every thread uses it.
    """

    def __init__(self, project):
        self.project = project
        self.shared = project.queue.backend == "mongodb"
        self._local = threading.local()
        self._all = []
        self._lock = threading.Lock()

    def get(self):
        if self.shared:
            with self._lock:
                if not self._all:
                    self._all.append(self._open())
                return self._all[0]
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._open()
            with self._lock:
                self._all.append(db)
        return db

    def _open(self):
        from jfr_lib.queue_db import open_queue_db

        return open_queue_db(self.project)

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                try:
                    db.close()
                except Exception:  # closing at exit: nothing left to do with an error
                    pass
            self._all.clear()


def _status_of(exc: JfrError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, StateError):
        return 409
    if isinstance(exc, UsageError):
        return 400
    return 500


def create_app(project, keys, read_only: bool = False, loopback_only: bool = True, bound: str | None = None):
    """The dashboard of ``project`` as an ASGI application.

    Parameters
    ----------
    project
        A :class:`jfr_lib.config.Project`.
    keys
        The :class:`~jfr_lib.gui.auth.Keys` of the server's token.
    read_only
        Offer no action, and refuse every action request.
    loopback_only
        The server listens on a loopback address: accept only loopback ``Host`` headers.
    bound
        That loopback address (127.0.0.1 when not given), accepted as a ``Host`` too.

    Returns
    -------
    starlette.applications.Starlette
        The application (its ``state.databases`` holds the database connections).
    """
    import contextlib

    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
    from starlette.templating import Jinja2Templates

    from jfr_lib.cli.output import printable
    from jfr_lib.gui import actions, jobview, queries
    from jfr_lib.gui.auth import TokenMiddleware
    from jfr_lib.redact import mask_text
    from jfr_lib.states import FlowState, JobState

    databases = Databases(project)
    graphs = queries.GraphCache()
    templates = Jinja2Templates(directory=str(HERE / "templates"))

    def answer(func, *args):
        """Run ``func(db, *args)`` in this thread; its data as JSON, or the one-line error."""
        try:
            return JSONResponse(func(databases.get(), *args), headers={"cache-control": "no-store"})
        except JfrError as exc:
            return _error(printable(mask_text(exc)), _status_of(exc))
        except Exception as exc:  # one line for the page, the traceback in the log
            log.exception("dashboard request failed")
            return _error(f"internal error: {type(exc).__name__}: {printable(mask_text(exc))}", 500)

    def _error(message: str, status: int):
        return JSONResponse({"error": message}, status_code=status, headers={"cache-control": "no-store"})

    def _id(request, key: str = "id") -> int:
        return int(request.path_params[key])

    def page(name: str, title: str):
        def render(request):
            context = {"page": name, "title": title, "project": project.name, "csrf": keys.csrf,
                       "read_only": read_only, "workers": list(project.workers), "refresh": REFRESH_SECONDS,
                       "job_states": [str(s) for s in JobState], "flow_states": [str(s) for s in FlowState],
                       "item": request.path_params.get("id", "")}  # fmt: skip
            return templates.TemplateResponse(request, f"{name}.html", context, headers={"cache-control": "no-store"})

        return render

    def api_overview(request):
        return answer(lambda db: queries.overview(db, project))

    def api_jobs(request):
        return answer(queries.jobs_page, dict(request.query_params))

    def api_job(request):
        return answer(lambda db: jobview.job_details(db, project, _id(request)))

    def api_output(request):
        return answer(lambda db: jobview.job_output(db, project, _id(request)))

    def api_files(request):
        params = request.query_params

        def files(db):
            lines = queries.whole_param(params.get("lines"), "lines", 1, 100_000, default=jobview.TAIL_LINES)
            return jobview.job_files(db, project, _id(request), params.get("name"), lines)

        return answer(files)

    def api_flows(request):
        return answer(queries.flows_page, dict(request.query_params))

    def api_flow(request):
        return answer(queries.flow_info, _id(request), graphs)

    def api_report(request):
        return answer(queries.report, dict(request.query_params))

    def acting(func):
        async def endpoint(request):
            if read_only:
                return _error("read-only dashboard: actions are disabled (start jfr gui without --read-only)", 403)
            try:
                body = await request.json() if await request.body() else {}
            except ValueError:
                return _error("the request's body is not JSON", 400)
            if not isinstance(body, dict):
                return _error("the request's body must be a JSON object", 400)
            verb = request.path_params["verb"]

            def act(db):
                return {"message": func(db, project, _id(request), verb, body)}

            return await run_in_threadpool(answer, act)

        return endpoint

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        databases.close()

    routes = [
        Route("/", page("overview", "overview")),
        Route("/jobs", page("jobs", "jobs")),
        Route("/jobs/{id:int}", page("job", "job")),
        Route("/flows", page("flows", "flows")),
        Route("/flows/{id:int}", page("flow", "flow")),
        Route("/report", page("report", "report")),
        Route("/api/overview", api_overview),
        Route("/api/jobs", api_jobs),
        Route("/api/jobs/{id:int}", api_job),
        Route("/api/jobs/{id:int}/output", api_output),
        Route("/api/jobs/{id:int}/files", api_files),
        Route("/api/jobs/{id:int}/{verb:str}", acting(actions.job_action), methods=["POST"]),
        Route("/api/flows", api_flows),
        Route("/api/flows/{id:int}", api_flow),
        Route("/api/flows/{id:int}/{verb:str}", acting(actions.flow_action), methods=["POST"]),
        Route("/api/report", api_report),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.databases = databases
    app.add_middleware(TokenMiddleware, keys=keys, loopback_only=loopback_only, bound=bound)
    return app
