from threading import Thread

from tornado.gen import Callback, Return, Task, coroutine
from toto.invocation import *


@coroutine
def invoke(handler, parameters):
    if parameters.get("old_callback"):
        Callback("key")  # Tornado 4's keyed callback: refused with a hint
    answer = yield Task(lambda callback: Thread(target=callback, args=[{"got": parameters}]).start())
    raise Return(answer)
