"""PostgreSQL side of RTTM: connections, migrations, partition maintenance."""
