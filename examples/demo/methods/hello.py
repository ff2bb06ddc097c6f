"""hello: a public method. GET /hello?name=you or {"method": "hello", "parameters": {"name": "you"}}."""


def invoke(handler, parameters):
    return {"greeting": f"Hello, {parameters.get('name', 'world')}!"}
