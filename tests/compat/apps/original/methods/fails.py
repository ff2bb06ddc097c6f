def invoke(handler, parameters):
    raise ValueError("the pump is out of water")
