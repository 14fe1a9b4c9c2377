"""The `/v2` app: Apiframe's routes, listed once, mounted by the receiver."""

from starlette.applications import Starlette
from starlette.routing import Route

from receiver.failures import HANDLERS, internal_error
from receiver.v2 import jobs, submit, uploads
from receiver.v2.access import with_caller
from receiver.v2.account import Account, models
from worker.apiframe.catalog import OPERATIONS


def create_v2_app() -> Starlette:
    account = Account()
    routes = [
        *(Route(f"/{path}", submit.submit_to(path), methods=["POST"]) for path in OPERATIONS),
        Route("/jobs/{id}", with_caller(jobs.get_job), methods=["GET"]),
        Route("/jobs", with_caller(jobs.list_jobs), methods=["GET"]),
        Route("/uploads", with_caller(uploads.upload), methods=["POST"]),
        Route("/me", with_caller(account.me), methods=["GET"]),
        Route("/models", models, methods=["GET"]),  # public, as Apiframe's is
    ]
    # A bug answers in Apiframe's error shape too (the receiver's own handler logs it).
    return Starlette(routes=routes, exception_handlers={**HANDLERS, Exception: internal_error})
