"""The methods the benchmark calls: ``echo`` and ``whoami``."""
