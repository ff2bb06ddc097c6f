from toto import hookimpl
from toto.serializers import JsonSerializer


@hookimpl
def toto_register_serializer():  # the hook is toto_register_serializers
    return [JsonSerializer()]
