def invoke(handler, parameters):
    return {"got": parameters}
