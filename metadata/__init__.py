"""The metadata DB: SQLModel tables, migrations, the unit of work and its queries."""
