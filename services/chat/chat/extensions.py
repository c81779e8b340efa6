"""Extensions created unbound; create_app binds them to an app."""

from typing import TYPE_CHECKING, Any

from flask_migrate import Migrate
from flask_socketio import SocketIO
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
socketio = SocketIO()


def socketio_server(sio: SocketIO = socketio) -> Any:
    """python-socketio's Server under `sio` (set by its init_app).

    Flask-SocketIO's typeshed stub leaves the attribute out as internal, and python-socketio
    ships no types: to a type checker the server is Any, here in one place.
    """
    return sio.server  # type: ignore[attr-defined]


# The base of the models. Flask-SQLAlchemy builds db.Model at run time from Base (adding the
# table name and bind handling); a type checker cannot take an attribute as a base class, so
# it sees Base itself, which declares everything the models use.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model
